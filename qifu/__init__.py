"""The entry layer of Qifu: the ``qifu`` command (:mod:`qifu.cli`), the API process(es)
(:mod:`qifu.serve`) and the application factory (:mod:`qifu.main`, ASGI ``qifu.app:app``).

It sits above both ``workers/`` and ``service/`` (the import contract in pyproject.toml): it wires
the domain to the broker (``workers.dispatch.register``) at the start of every process it runs.
"""
