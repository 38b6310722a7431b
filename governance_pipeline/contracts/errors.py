"""Stable error codes, their suggested fixes and the exception types that carry them.

Every error the product raises names a registered code (``GP-<AREA>-<NNN>``). The registry is the
single source for the CLI's messages, the RFC 9457 problem documents and ``docs/errors.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes of the command line (DESIGN.md §4)."""

    OK = 0
    OPERATIONAL = 1
    INVALID_INPUT = 2
    POLICY_STOP = 3
    BLOCKED = 4
    INTEGRITY = 5


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    title: str
    fix: str
    exit_code: ExitCode

    @property
    def anchor(self) -> str:
        return self.code.lower()

    @property
    def docs_ref(self) -> str:
        return f"docs/errors.md#{self.anchor}"


REGISTRY: dict[str, ErrorCode] = {}


def register(code: str, title: str, fix: str, exit_code: ExitCode) -> ErrorCode:
    if code in REGISTRY:
        raise ValueError(f"error code {code} registered twice")
    entry = ErrorCode(code, title, fix, exit_code)
    REGISTRY[code] = entry
    return entry


# --- configuration and input (exit 2) -------------------------------------------------------
CONFIG_INVALID = register(
    "GP-CONFIG-001", "Invalid configuration",
    "Correct the field named in the message; `governance-pipeline validate FILE` lists every problem.",
    ExitCode.INVALID_INPUT)
ENV_INVALID = register(
    "GP-CONFIG-002", "Invalid environment setting",
    "Check GOVERNANCE_HOME and GOVERNANCE_DB_URL; the URL must be a SQLAlchemy URL such as "
    "sqlite:///path/landscape.db or postgresql://user@host/db.",
    ExitCode.INVALID_INPUT)
CANONICAL_VALUE = register(
    "GP-HASH-001", "Value cannot be canonicalised",
    "Only JSON values can be hashed: replace NaN/Infinity with null or a string, keep integers "
    "within ±2^53, and use string keys.",
    ExitCode.INVALID_INPUT)
YAML_DUPLICATE_KEY = register(
    "GP-YAML-001", "A YAML mapping holds the same key twice",
    "Remove or rename one of the two keys at the lines shown: YAML would silently keep only the "
    "last one, so what a reviewer reads first would not be what runs.",
    ExitCode.INVALID_INPUT)
YAML_ALIASES = register(
    "GP-YAML-002", "A YAML document uses too many aliases, or aliases that expand too far",
    "Write the repeated values out, or use fewer anchors/aliases (`&name` / `*name`): at most "
    "1,000 aliases and 200,000 values once expanded; an alias may not contain itself.",
    ExitCode.INVALID_INPUT)
YAML_TOO_DEEP = register(
    "GP-YAML-003", "A YAML document is nested too deeply",
    "Flatten the structure at the line shown: mappings and lists nest at most 64 levels.",
    ExitCode.INVALID_INPUT)
YAML_TOO_LARGE = register(
    "GP-YAML-004", "A YAML document is too large",
    "Configuration files are read whole and must stay under 2,000,000 characters: move data out "
    "of the YAML (e.g. into a lookup file).",
    ExitCode.INVALID_INPUT)
NOT_FOUND = register(
    "GP-INPUT-001", "Not found",
    "Check the identifier; `governance-pipeline runs` lists the runs in this Landscape.",
    ExitCode.INVALID_INPUT)
USAGE_INVALID = register(
    "GP-INPUT-002", "Invalid command-line arguments",
    "Correct the argument or option named in the message; `governance-pipeline COMMAND --help` "
    "lists what the command accepts.",
    ExitCode.INVALID_INPUT)

# --- operational (exit 1) -----------------------------------------------------------------------
DATABASE_UNAVAILABLE = register(
    "GP-DB-001", "Audit database unavailable",
    "Check GOVERNANCE_DB_URL and that the database server is running and reachable.",
    ExitCode.OPERATIONAL)
SCHEMA_OUTDATED = register(
    "GP-DB-002", "Audit database schema is not at the expected revision",
    "Run `governance-pipeline db upgrade`.",
    ExitCode.OPERATIONAL)
AUDIT_WRITE_FAILED = register(
    "GP-DB-003", "Audit write failed; the transaction was rolled back",
    "Nothing from the failed transaction was kept. Fix the cause in the message and resume the run.",
    ExitCode.OPERATIONAL)
KEY_UNAVAILABLE = register(
    "GP-KEY-001", "Signing key unavailable",
    "Check that $GOVERNANCE_HOME/keys exists, is writable by you and holds a valid Ed25519 key "
    "with mode 0600.",
    ExitCode.OPERATIONAL)
FILE_IO_FAILED = register(
    "GP-IO-001", "A file could not be read or written",
    "Check that the path in the message exists and that you may read or write it.",
    ExitCode.OPERATIONAL)
STALE_STATE = register(
    "GP-DB-004", "The record changed since it was read; nothing was written",
    "Another process acted on the same record first (a resume, a consume, an escalation). Read "
    "its current state (`governance-pipeline runs`, `approvals list`) and retry if still needed.",
    ExitCode.OPERATIONAL)
INTERNAL_ERROR = register(
    "GP-INTERNAL-001", "Unexpected internal error",
    "This is a bug: re-run with --debug (or GOVERNANCE_DEBUG=1) to see the traceback, and report "
    "it with that output.",
    ExitCode.OPERATIONAL)

# --- integrity (exit 5) ---------------------------------------------------------------------------
AUDIT_INTEGRITY = register(
    "GP-AUDIT-001", "Audit record violates an invariant",
    "The audit trail is inconsistent: run `governance-pipeline verify` to locate the damage and "
    "restore the database from a verified backup.",
    ExitCode.INTEGRITY)
PAYLOAD_CORRUPT = register(
    "GP-AUDIT-002", "Stored payload does not match its content hash",
    "The payload store was altered. Restore it from a verified backup; `verify` lists every "
    "affected payload.",
    ExitCode.INTEGRITY)
LEDGER_TAMPERED = register(
    "GP-AUDIT-003", "The audit ledger does not match the audit tables",
    "Treat the run's records as untrustworthy; the findings name each altered record. Restore "
    "from a verified backup and investigate who had write access.",
    ExitCode.INTEGRITY)
SWEEP_FINDINGS = register(
    "GP-AUDIT-004", "The audit sweep found broken invariants",
    "Each finding names the token or state involved; resume the run if it was interrupted, "
    "otherwise investigate the listed records.",
    ExitCode.INTEGRITY)
SEAL_UNTRUSTED = register(
    "GP-AUDIT-005", "A ledger seal is invalid, made by an untrusted key, or missing",
    "If the signing key was rotated, verify with the public key that sealed the run; otherwise "
    "the sealed history was rewritten or cut short: restore from a verified backup.",
    ExitCode.INTEGRITY)

# --- sources (GP-SOURCE) ------------------------------------------------------------------------
SOURCE_OPTIONS_INVALID = register(
    "GP-SOURCE-001", "Invalid source options",
    "Correct the option named in the message; docs/sources.md lists the options of each source "
    "(csv, jsonl, parquet, sql) and the row schema with their defaults.",
    ExitCode.INVALID_INPUT)
SOURCE_UNREADABLE = register(
    "GP-SOURCE-002", "The source input cannot be read as a whole",
    "The message names the file and what is wrong with it as a whole (header, file format). "
    "Single bad records never raise this: they are quarantined with a reason. Fix or re-export "
    "the file.",
    ExitCode.INVALID_INPUT)
SOURCE_QUERY_FAILED = register(
    "GP-SOURCE-003", "The source query failed",
    "Check the query and its params against the source database; the message carries the "
    "database's own error. Give result columns unique names (use AS aliases).",
    ExitCode.INVALID_INPUT)
SOURCE_DB_UNAVAILABLE = register(
    "GP-SOURCE-004", "The source database is unavailable",
    "Check the source url (driver, host, port, credentials, database name) and that the server "
    "is running and reachable.",
    ExitCode.OPERATIONAL)

# --- sinks (GP-SINK) ------------------------------------------------------------------------------
SINK_OPTIONS_INVALID = register(
    "GP-SINK-001", "Invalid sink options",
    "Correct the option named in the message; docs/sinks.md lists the options of each sink "
    "(csv, jsonl, parquet, sql) with their defaults.",
    ExitCode.INVALID_INPUT)
SINK_WRITE_FAILED = register(
    "GP-SINK-002", "A sink could not write its output",
    "Check that the output directory exists and is writable, that no directory occupies the "
    "output or part file name, that the disk has space, and (SQL sinks) that the database is "
    "reachable; then resume the run: parts already written are kept and rewritten idempotently.",
    ExitCode.OPERATIONAL)
SINK_PART_MISSING = register(
    "GP-SINK-003", "A sink part is missing at finalize",
    "A part the run wrote is no longer in the parts directory (`<output>.parts/`): it was deleted "
    "or the output was moved. Restore the directory, or re-run the pipeline from the start.",
    ExitCode.OPERATIONAL)
SINK_ROW_UNFIT = register(
    "GP-SINK-004", "A row does not fit the sink",
    "Rows a sink cannot take must be diverted before they are written: give the sink a fail sink "
    "(see docs/pipelines.md), or change the transform so the rows match the sink's columns.",
    ExitCode.INVALID_INPUT)
SINK_TABLE_UNUSABLE = register(
    "GP-SINK-005", "The SQL sink's table cannot be used",
    "Create the table with the key column (default `_gp_token_id`) as its primary key and a "
    "`_gp_part` text column, or set `create: true` and let the sink create it.",
    ExitCode.INVALID_INPUT)


# --- expressions and transforms (GP-EXPR, GP-TRANSFORM) -----------------------------------------
EXPRESSION_INVALID = register(
    "GP-EXPR-001", "Invalid expression",
    "Correct the expression at the line:column shown; docs/expressions.md lists the operators and "
    "functions the language allows (no attribute access, no '**', no calls outside the list).",
    ExitCode.INVALID_INPUT)
EXPRESSION_EVAL = register(
    "GP-EXPR-002", "An expression could not be evaluated for a row",
    "The row lacks a field or holds another type than the expression expects: use "
    "row.get(\"field\", default), coalesce(...) or int()/float()/str() in the expression, or fix "
    "the input (docs/expressions.md).",
    ExitCode.INVALID_INPUT)
EXPRESSION_PATTERN_UNSAFE = register(
    "GP-EXPR-003", "A regular expression in an expression is refused",
    "Patterns run on RE2 (linear time): rewrite it without backreferences (\\1) or look-arounds "
    "((?=...), (?<=...)), at most 1,000 characters; docs/expressions.md#matches shows the syntax.",
    ExitCode.INVALID_INPUT)
EXPRESSION_TOO_LARGE = register(
    "GP-EXPR-004", "An expression would build a value beyond the language's size caps",
    "Integers are capped at 2**53 in magnitude (what RFC 8785 hashing represents exactly) and "
    "strings/lists at 1,000,000 items: compute smaller values, or keep big numbers as text.",
    ExitCode.INVALID_INPUT)
TRANSFORM_OPTIONS_INVALID = register(
    "GP-TRANSFORM-001", "Invalid transform options",
    "Correct the option named in the message; docs/expressions.md#built-in-transforms lists the "
    "options of each built-in transform (field_map, rename, compute, filter, lookup, call, "
    "summarize).",
    ExitCode.INVALID_INPUT)
LOOKUP_TABLE_INVALID = register(
    "GP-TRANSFORM-002", "A lookup table could not be loaded",
    "The lookup file must exist, be UTF-8 CSV (with a header) or JSON Lines (one object per line), "
    "hold the key column and the copied columns, have unique keys and at most max_rows rows.",
    ExitCode.INVALID_INPUT)
BATCH_FUNCTION_FAILED = register(
    "GP-TRANSFORM-003", "An aggregation batch function failed on its rows",
    "The batch holds a value the aggregate cannot use (e.g. text in sum:field): fix the input or "
    "convert the field with a compute transform before the aggregation.",
    ExitCode.INVALID_INPUT)
PYTHON_FUNCTION_UNLOADABLE = register(
    "GP-TRANSFORM-004", "A Python transform's function cannot be imported",
    "Give options.function as package.module:callable; the module must be importable from the "
    "pipeline file's directory, a directory in options.path (relative to the pipeline file) or "
    "the environment, and define that callable (docs/python_transforms.md).",
    ExitCode.INVALID_INPUT)
PYTHON_FUNCTION_SIGNATURE = register(
    "GP-TRANSFORM-005", "A Python transform's function has the wrong shape",
    "A row-wise function takes one argument, the row (dict), and returns a dict (or None to "
    "drop the row); a dataframe function (mode: dataframe, or plugin pandas) takes one "
    "pandas.DataFrame and returns one. Fix the function or the node's mode.",
    ExitCode.INVALID_INPUT)
PYTHON_ROW_IDENTITY = register(
    "GP-TRANSFORM-006", "A DataFrame transform broke row identity",
    "Keep the input index: filter rows (dropped rows are recorded as filtered) but do not "
    "reset_index, set_index or concat new rows; for one-to-many output declare expands: true, "
    "every output row keeping the index value of the row it came from.",
    ExitCode.INVALID_INPUT)
PYTHON_VALUE_UNREPRESENTABLE = register(
    "GP-TRANSFORM-007", "A Python transform returned a value the audit trail cannot hash",
    "Return JSON values (str, int, float, bool, None, lists, dicts with str keys); NaN and "
    "infinity are refused: replace them with None (df.replace([np.inf, -np.inf], np.nan) then "
    "a nullable dtype) or a number. Timestamps become ISO strings; Decimals must be converted.",
    ExitCode.INVALID_INPUT)
PYTHON_FUNCTION_RAISED = register(
    "GP-TRANSFORM-008", "A Python transform raised an exception for a row",
    "The exception type and message are recorded on the token's node state (explain shows "
    "them) and the row took the node's on_error route; fix the input or handle the case in "
    "the function.",
    ExitCode.INVALID_INPUT)

# --- retention and purge (GP-RETENTION), erasure (GP-ERASE): docs/data_protection.md ----------
RETENTION_INVALID = register(
    "GP-RETENTION-001", "Invalid retention setting",
    "Write a retention as a whole number of days, weeks or years (`90d`, `26w`, `1y`) in the "
    "pipeline's `retention:` or in GOVERNANCE_RETENTION_PAYLOADS / GOVERNANCE_RETENTION_RUNS / "
    "GOVERNANCE_RETENTION_FLOOR.",
    ExitCode.INVALID_INPUT)
RETENTION_UNDER_FLOOR = register(
    "GP-RETENTION-002", "Retention is shorter than the retention floor; nothing was purged",
    "Raise the retention named in the message to at least the floor (default 183 days, the "
    "six months EU AI Act Art. 19/26(6) ask for), or lower GOVERNANCE_RETENTION_FLOOR if your "
    "legal basis allows it.",
    ExitCode.INVALID_INPUT)
RETENTION_RUN_UNKNOWN = register(
    "GP-RETENTION-003", "No such run or incident; nothing was changed",
    "Check the identifier: `governance-pipeline runs` lists runs, `incidents` lists incidents.",
    ExitCode.INVALID_INPUT)
HOLD_NOT_ACTIVE = register(
    "GP-RETENTION-004", "No active legal hold with that id; nothing was changed",
    "`governance-pipeline hold list` shows the active holds and their ids.",
    ExitCode.INVALID_INPUT)
PURGE_HELD = register(
    "GP-RETENTION-005", "The run is under legal hold; it was not purged",
    "Release the hold first (`governance-pipeline hold remove HOLD_ID --reason TEXT`) once the "
    "matter it preserves is closed; `hold list` shows it.",
    ExitCode.BLOCKED)
PURGE_UNVERIFIED = register(
    "GP-RETENTION-006", "The run does not verify; its payloads were not purged",
    "Purging would destroy the evidence of what was altered: run `governance-pipeline verify "
    "RUN_ID`, investigate the findings, and purge once the run verifies.",
    ExitCode.INTEGRITY)
ERASE_NO_SUBJECT_FIELD = register(
    "GP-ERASE-001", "The field is not an indexed subject field; nothing was erased",
    "Erase by a field the pipeline declares in `subject_fields:` (the message lists the indexed "
    "ones), or erase one row with `--run RUN_ID --row N`.",
    ExitCode.INVALID_INPUT)
ERASE_NO_MATCH = register(
    "GP-ERASE-002", "No recorded payload carries that subject value; nothing was erased",
    "Check the value (compared as text, exactly): payloads recorded before `subject_fields` "
    "was declared are not indexed; erase them by row or purge them by retention.",
    ExitCode.INVALID_INPUT)
ERASE_ROW_UNKNOWN = register(
    "GP-ERASE-003", "No such run or row; nothing was erased",
    "Check the run id (`governance-pipeline runs`) and the row index (`explain RUN_ID --row N`).",
    ExitCode.INVALID_INPUT)
ERASE_ALREADY = register(
    "GP-ERASE-004", "Already erased; nothing was changed",
    "The message names the erasure that destroyed the keys; `explain` shows it. No action needed.",
    ExitCode.INVALID_INPUT)
ERASE_SELECTOR_INVALID = register(
    "GP-ERASE-005", "Erase needs either --field and --value, or --run and --row, and a reason",
    "Give `--field F --value V` or `--run RUN_ID --row N`, and `--reason TEXT` (e.g. the "
    "request's ticket number).",
    ExitCode.INVALID_INPUT)
PAYLOAD_REDACTED = register(
    "GP-RETENTION-007", "The payload's contents were removed by a purge or an erasure",
    "Nothing to repair: its hash still stands in the audit trail and verify checks it. The "
    "message names the purge or erasure; `explain` shows it for the row.",
    ExitCode.INVALID_INPUT)
DATA_KEY_UNAVAILABLE = register(
    "GP-ERASE-006", "The data-protection secret is unavailable or does not open the data keys",
    "Restore $GOVERNANCE_HOME/keys/data_protection.key (mode 0600) from your key backup; the "
    "encrypted payloads cannot be read without it.",
    ExitCode.OPERATIONAL)


class GovernanceError(Exception):
    """Base of every error the product raises on purpose: carries a registered code."""

    default_code: ErrorCode = AUDIT_WRITE_FAILED

    def __init__(self, message: str, *, code: ErrorCode | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.details = details or {}

    @property
    def exit_code(self) -> ExitCode:
        return self.code.exit_code

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """RFC 9457 problem details, with our code, fix and exit code as extension members."""
        doc: dict[str, Any] = {
            "type": f"urn:governance-pipeline:error:{self.code.code}",
            "title": self.code.title,
            "detail": self.message,
            "code": self.code.code,
            "fix": self.code.fix,
            "exit_code": int(self.exit_code),
            "docs": self.code.docs_ref,
        }
        if instance:
            doc["instance"] = instance
        if self.details:
            doc["details"] = self.details
        return doc


class ConfigError(GovernanceError):
    default_code = CONFIG_INVALID


class NotFoundError(GovernanceError):
    default_code = NOT_FOUND


class CanonicalizationError(GovernanceError, ValueError):
    default_code = CANONICAL_VALUE


class OperationalError(GovernanceError):
    default_code = DATABASE_UNAVAILABLE


class StaleStateError(GovernanceError):
    """A guarded write found its record no longer in the expected state; the unit was discarded."""

    default_code = STALE_STATE


class PolicyStopError(GovernanceError):
    """An enforced policy stopped a run (exit 3). The code comes from the policy service."""


class BlockedError(GovernanceError):
    """An approval is required or an export is gated (exit 4). The code names which."""


class AuditIntegrityError(GovernanceError):
    """Raised when an audit record breaks an invariant, on write (before insert) or on read (Tier-1)."""

    default_code = AUDIT_INTEGRITY


@dataclass(frozen=True, slots=True)
class Finding:
    """One discrepancy found by verify or sweep: where it is and what is wrong."""

    check: str
    table: str
    key: str
    message: str
    scope: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        doc = {"check": self.check, "table": self.table, "key": self.key, "message": self.message}
        if self.scope is not None:
            doc["scope"] = self.scope
        if self.extra:
            doc["extra"] = self.extra
        return doc
