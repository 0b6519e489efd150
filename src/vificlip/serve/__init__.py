"""`vificlip serve`: a web page and a JSON API over the existing recogniser, attention rollout and search.

Modules: ``app`` (HTTP transport: routes, request parsing, one-line errors) → ``service`` (the loaded model,
micro-batched inference, attention, search) → ``tools`` (``VideoRecognizer``, ``rollout_overlays``, ``nearest``).
``config`` holds every default and limit; ``server`` runs uvicorn; ``loadtest`` is ``vificlip benchmark serve``.
The server adds transport and batching only: every number it returns comes from the same code as the CLI.
Nothing is imported here, so ``vificlip --help`` does not pay for FastAPI and torch.
"""
