"""Generators of the docs tables (study, budget, fault tables) from records; run from the repository root
as modules (`python -m scripts.study_docs`). make-target drivers (compose_track.sh) sit beside them."""
