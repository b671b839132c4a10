"""Build step: the wheel carries the detector profiles, retention policies and mail templates.

`detectors/` and `policies/` at the top of the repository stay the one source: they are copied into
the wheel as `acqd/_shipped/...` (read through `acqd.shipped`). An editable install reads them
from the clone instead.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = (("detectors", "*.yaml"), ("policies", "*.yaml"), ("policies/templates", "*.j2"))


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for folder, pattern in SHIPPED:
            files = sorted(p for p in Path(folder).glob(pattern) if p.is_file())
            if not files:
                raise SystemExit(f"setup.py: no {folder}/{pattern} to ship (build from the repository root)")
            target = Path(self.build_lib, "acqd", "_shipped", folder)
            self.mkpath(str(target))
            for f in files:
                self.copy_file(str(f), str(target / f.name))


setup(cmdclass={"build_py": BuildPyWithData})
