"""balloonctl's commands, one module per group. Each module has
`register(sub, common)`, which adds its subparsers and sets `handler` on each:
an `async (args, ctx) -> int` that does the work.
"""
