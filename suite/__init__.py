"""The composition root: builds every service from the one configuration and runs them (runtime.py), the settings
model (settings.py), the `soc` command line (cli.py) and the demo (demo.py). No feature package imports it."""
