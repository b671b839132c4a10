"""The facility service (issue 16): what runs beside central storage over the shared catalog."""
