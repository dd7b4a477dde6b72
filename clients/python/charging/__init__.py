"""Generated from proto/ by `python -m grid.protogen`; do not edit."""
