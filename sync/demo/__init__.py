"""The built-in demo cloud (`cloud/`, backup CSVs) and its configuration (`glancesync.conf`); see README.md here.

The console's demo uploads at DEMO_RATE_MB_S, about a 10 Gbit/s link: the demo's images are real-sized (0.2 to
4 GB), so a region's sync takes some seconds and its progress bars, current image and log tail visibly move.
Tests and the scenario cases use the file cloud without a rate (instant).
"""

DEMO_RATE_MB_S = 1000
