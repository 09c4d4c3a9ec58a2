"""Checkpoint I/O, beside the flow of nn -> models -> tasks -> trainer and used by it, never
the reverse: nothing here imports a task, a model or the trainer.

* :mod:`rnnkit.checkpoint.files` -- the checkpoint directory format: atomic writes, checksums,
  safetensors + JSON, safe reads of untrusted files.
* :mod:`rnnkit.checkpoint.state` -- nested training state <-> tensors + JSON skeleton.
* :mod:`rnnkit.checkpoint.jsonfile`, :mod:`rnnkit.checkpoint.safetensors_header` -- bounded
  readers of the two file kinds.
* :mod:`rnnkit.checkpoint.lock` -- one trainer per run directory.
* :mod:`rnnkit.checkpoint.runs` -- a run directory: finding its checkpoint, never clobbering one.
"""
