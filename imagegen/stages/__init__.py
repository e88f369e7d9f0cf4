"""The stages as store derivations: render -> overlay entry, build -> image entry, test -> verdict entry.

Each stage states what its output is a function of (derivations.py); realise.py realises them in the
store, so a stage whose inputs did not change is found instead of run again.
"""
