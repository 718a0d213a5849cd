"""The scenario's names, importable without loading its models."""

SCHEMA = 'Sch"ema Mixed.Case;x'
TABLE = 'Ev"dq Mixed.Case;T'
INJECTION = 'x" ON t (tenant_id); DROP TABLE canary; --'
SPACED = 'Ix"q Sp.ace;Mixed'
