"""The facility overview (issue 16): storage usage and fleet health over the shared catalog, for
`acqd hub usage`, `acqd hub fleet` and the hub's metrics port."""
