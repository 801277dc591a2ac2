"""Audit callback for LiteLLM proxy (Sluice's audit-logger policy): one JSONL
record per request, success or failure (a guardrail block, a refused model, a
rate limit), appended to $SLUICE_AUDIT_LOG (default ./sluice-audit.jsonl).

Sluice writes this file beside config.yaml and names one of its instances
in the config (the config, not the environment, decides, so a change of
`log_all_access` is a change of config.yaml that drift sees):

    litellm_settings:
      callbacks: sluice_audit.audit        # log_all_access: every request
      callbacks: sluice_audit.audit_hits   # otherwise: policy hits only

A policy hit is a refused request (a guardrail block, a refused model, a rate
limit) or an allowed one in which a guardrail found something (a masked
value, a flag of a logging_only guardrail). LiteLLM imports the module
relative to the config file's directory. Records hold no message text and no
keys.
"""
import datetime
import json
import os
import threading

from litellm.integrations.custom_logger import CustomLogger

_lock = threading.Lock()


def _write(record):
    path = os.environ.get("SLUICE_AUDIT_LOG", "sluice-audit.jsonl")
    line = json.dumps(record, sort_keys=True, default=str)
    with _lock, open(path, "a") as f:
        f.write(line + "\n")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _guardrails(info):
    """Which guardrails ran and what they found (names and actions only, no
    matched text). A `mode: logging_only` guardrail that matched shows
    status "guardrail_flagged" (BLOCK-action matches only; MASK-only matches
    keep "success" with a non-empty "found"): the request went through
    unchanged. LiteLLM 1.108.7 reports each logging_only guardrail twice;
    one entry per (name, mode) is kept."""
    if not isinstance(info, list):
        return []
    out = []
    seen = set()
    for g in info:
        if not isinstance(g, dict) or (g.get("guardrail_name"), g.get("guardrail_mode")) in seen:
            continue
        seen.add((g.get("guardrail_name"), g.get("guardrail_mode")))
        found = []
        for d in g.get("guardrail_response") or []:
            if isinstance(d, dict):
                found.append({"what": d.get("pattern_name") or d.get("category") or d.get("type"),
                              "action": d.get("action")})
        out.append({"name": g.get("guardrail_name"), "mode": g.get("guardrail_mode"),
                    "status": g.get("guardrail_status"), "found": found})
    return out


def _hit(guardrails):
    return any(g["found"] or g["status"] not in (None, "success") for g in guardrails)


class SluiceAudit(CustomLogger):
    def __init__(self, all_access=True):
        super().__init__()
        self.all_access = all_access

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        slo = kwargs.get("standard_logging_object") or {}
        guardrails = _guardrails(slo.get("guardrail_information"))
        if not self.all_access and not _hit(guardrails):
            return
        _write({
            "ts": _now(),
            "outcome": "allowed",
            "call_id": kwargs.get("litellm_call_id"),
            "model": slo.get("model_group") or kwargs.get("model"),
            "status": 200,
            "guardrails": guardrails,
        })

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict, traceback_str=None):
        _write({
            "ts": _now(),
            "outcome": "refused",
            "call_id": request_data.get("litellm_call_id"),
            "model": request_data.get("model"),
            "status": getattr(original_exception, "status_code", None),
            "error": type(original_exception).__name__,
        })


audit = SluiceAudit(all_access=True)
audit_hits = SluiceAudit(all_access=False)
