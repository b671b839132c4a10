from acqd.cli import main

main()
