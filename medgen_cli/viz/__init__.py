"""Visualisation: slice grids and MIPs of volumes, image grids (headless, matplotlib Agg / Pillow)."""
