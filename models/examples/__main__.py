"""`python -m models.examples build [--name NAME ...] [--out DIR]`: see models.examples.build."""

from models.examples.build import main

main()
