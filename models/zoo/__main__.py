"""`python -m models.zoo build [--name NAME ...] [--quick] [--out DIR]`: see models.zoo.build."""

from models.zoo.build import main

main()
