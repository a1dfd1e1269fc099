"""Training methods, one package each (`nas/methods/<name>/`): the module, and what belongs to it only
(its controller or strategy, its figures, its evaluation network).

A method's training module implements the method protocol (`nas.modules.method.MethodModule`) and
registers itself under its `method` name; the shared code (train.py, search.py, checkpoints) asks
the protocol and never names a method. Bender et al.'s one-shot method, with SPOS and FairNAS as its
samplers, is the base all supernet methods share: `nas.modules.supernet.OneShotModule` ("oneshot").
"""
