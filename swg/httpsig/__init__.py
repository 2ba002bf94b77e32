"""swg.httpsig: HTTP signatures, the HTTP-layer subset of Suricata rules (the IDS/IPS function
for web traffic), as a pure core.

parse.py reads rules text (lexer.py: lines, options, content strings; pcre.py: PCRE to Python
`re`; ports.py: header ports) into signatures (model.py) and a load report: what was skipped and
why, which lines are malformed. ruleset.py indexes the signatures behind a literal prefilter and
matches a request, or a response, view built in buffers.py; match.py is the content/pcre
evaluator. A hit is a value: `blocking_hits(hits, mode)` says which block (reason
"http-signature"), the caller logs the rest. Rule files are read by
swg/runtime/httpsig_import.py; no rules ship with the product.
"""

from swg.httpsig.buffers import (
    DEFAULT_BODY_LIMIT_BYTES,
    HttpRequestView,
    HttpResponseView,
    normalise_host,
    normalise_uri,
    request_buffers,
    response_buffers,
)
from swg.httpsig.model import (
    BufferInspection,
    ContentMatch,
    DataAtCheck,
    HttpSignature,
    HttpSignatureError,
    LoadReport,
    PcreMatch,
    PortSet,
    RuleProblem,
    SignatureHit,
    SizeCheck,
)
from swg.httpsig.parse import RuleParse, RuleSkip, parse_rule, parse_rules
from swg.httpsig.ruleset import (
    BLOCKING_MODES,
    EMPTY_RULESET,
    REASON,
    BlockingMode,
    HttpRuleset,
    blocking_hits,
    choose_anchor,
    compile_ruleset,
)

__all__ = [
    "BLOCKING_MODES", "DEFAULT_BODY_LIMIT_BYTES", "EMPTY_RULESET", "REASON", "BlockingMode",
    "BufferInspection", "ContentMatch", "DataAtCheck", "HttpRequestView", "HttpResponseView",
    "HttpRuleset", "HttpSignature", "HttpSignatureError", "LoadReport", "PcreMatch", "PortSet", "RuleParse",
    "RuleProblem", "RuleSkip", "SignatureHit", "SizeCheck", "blocking_hits", "choose_anchor",
    "compile_ruleset", "normalise_host", "normalise_uri", "parse_rule", "parse_rules",
    "request_buffers", "response_buffers",
]
