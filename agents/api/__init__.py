"""The HTTP API under /api/v1/ (docs/api.md): every client operation, for the remote
client and for agents in any language. Views are thin: they check the token's scope and
call the same store functions the embedded client calls."""
