"""The store: the only code that writes (`writes` commits, `resume` queues and claims
resumes, `lifecycle` exports, imports and prunes), the hot reads (`reads`), and the raw
SQL they share (`sql`). Each write is one database transaction (docs/contract.md §2)."""
