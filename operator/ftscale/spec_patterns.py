"""The formats of names and values a ScalingStudy carries into Kubernetes objects, as regular
expressions with the words that explain them.

crds/generate.py puts the regexes into the CRD (OpenAPI `pattern`, or CEL `matches()`), and
ftscale.spec adds the words to a pattern error: the API server can only say "should match
'<regex>'", which names the field and the value but not what the value should look like.
The regexes are RE2 and Python `re` alike (no look-around), so both engines agree.
"""

from __future__ import annotations

# RFC 1123 label: run Job names, label values and Service names are built from it.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# RFC 1123 subdomain (ServiceAccount, PVC, PriorityClass names); length is bounded apart.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A label value (apimachinery IsValidLabelValue): empty, or ≤ 63 of these, alphanumeric ends.
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A label key: [DNS-subdomain prefix/]name, name ≤ 63 characters (bounded by the repetition).
LABEL_KEY = (r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?"
             r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_KEY_MAX = 253 + 1 + 63
# A container image reference (distribution/reference, simplified): [registry[:port]/]path
# components of lower-case letters, digits and separators, an optional :tag and @sha256:digest.
# No spaces, no upper case in the path, no empty components.
IMAGE = (r"^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*"
         r"(:[0-9]+)?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
         r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")
# A Kubernetes quantity that is not negative (resource.Quantity's grammar without the sign).
QUANTITY = (r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
            r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
# The known placeholders of a prompt template (ftscale_trainer.data.render fills them with
# str.format); any other brace would be a KeyError or ValueError in every run.
TEMPLATE_PLACEHOLDERS = ("source", "source_lang", "target_lang")
TEMPLATE = r"^([^{}]|\{(" + "|".join(TEMPLATE_PLACEHOLDERS) + r")\})*$"

# What each pattern means, in words, for messages.
WORDS = {
    DNS_LABEL: "a DNS label: lower-case letters, digits and '-', starting and ending with a "
               "letter or digit",
    DNS_SUBDOMAIN: "a DNS subdomain: DNS labels joined by '.'",
    LABEL_VALUE: "a label value: letters, digits, '-', '_' and '.', starting and ending with a "
                 "letter or digit",
    IMAGE: "an image reference such as ghcr.io/org/trainer:1.0 or trainer@sha256:<64 hex>, "
           "without spaces or upper-case letters in the path",
    QUANTITY: "a Kubernetes quantity of at least 0, such as 500m, 2, 1.5, 2Gi or 512Mi",
}
