"""The learners: one module per family (`qmix.py`, `ppo.py`, …), each registering its algorithms with
`coopmarl.algos.base.register_algo`; `fields.py` holds the config field groups they share and `offpolicy.py`
the off-policy core. `coopmarl.algos.base.list_algos()` lists them (importing the built-in ones on first use)."""
