"""Serving a trained language model over HTTP: ``rnnkit serve DIR`` (``pip install
'rnnkit[serve]'`` for FastAPI and uvicorn).

``app.py`` is the API (``create_app(model, vocab, config, limits)``), ``request.py`` what a
request may ask (``GenerateRequest``, ``Limits``); the command line is
``rnnkit.commands.serve``. None is imported here, so ``import rnnkit`` and ``rnnkit --help``
never need the optional dependencies.
"""
