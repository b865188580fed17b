"""Image references as users write them and as the kubelet reports them. Pure string work.

The grammar is distribution/reference's (`reference/regexp.go`, the one containerd and the kubelet
parse with): `[domain/]path[:tag][@digest]`. The kubelet spells one image many ways: `status.image` may
be the spec's reference, another tag of the same image (kubernetes#51017), `docker.io/library/x:tag`
for `x`, or a bare `sha256:` image ID; `status.imageID` is `repo@sha256:...` (a repo digest),
`docker-pullable://repo@sha256:...` (dockershim) or a bare `sha256:...` (an image that has no repo
digest, e.g. one imported into containerd). Only digests identify an image; names are a fallback.
"""

import re

# distribution/reference regexp.go, spelled out: domain, path components, tag and digest.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?"
)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")  # docker-pullable://, docker://
_DIGEST_IN = re.compile(rf"(?:^|@)({_DIGEST})$")
NAME_LIMIT = 255  # distribution/reference NameTotalLengthMax


def is_reference(ref: str) -> bool:
    """`ref` parses as an image reference (what the kubelet would accept rather than InvalidImageName)."""
    name = ref.split("@", 1)[0]
    return bool(_REFERENCE.fullmatch(ref)) and len(name.rsplit(":", 1)[0]) <= NAME_LIMIT


def digest_of(ref: str | None) -> str | None:
    """The `algorithm:hex` digest a reference or image ID pins (`x@sha256:..`, bare `sha256:..`), lower
    case; None for a tag."""
    if not ref:
        return None
    found = _DIGEST_IN.search(_SCHEME.sub("", ref.strip()))
    return found.group(1).lower() if found else None


def normalize_image(ref: str) -> str:
    """`nginx` and `docker.io/library/nginx:latest` are one image; the kubelet reports either form."""
    name = _SCHEME.sub("", ref)
    name = name.removeprefix("index.docker.io/").removeprefix("docker.io/").removeprefix("library/")
    last = name.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        name += ":latest"
    return name


def same_name(a: str, b: str) -> bool:
    """Two references name the same repository and tag (digests ignored: `x:1@sha256:..` is `x:1`)."""
    return _without_digest(normalize_image(a)) == _without_digest(normalize_image(b))


def _without_digest(normalized: str) -> str:
    # `x@sha256:..` keeps no tag, so it never equals `x:latest`: a digest says nothing about tags.
    return normalized.partition("@")[0]
