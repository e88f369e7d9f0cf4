"""The content-addressed store: every stage's output kept under the hash of its declared inputs.

store = Store(resolve_store_root(option, os.environ))
drv = Derivation("laptop-overlay", "render", {"profile": profile_json, "templates": FileTree(dir)})
entry = store.realise(drv, lambda out: render_overlay(profile, out))
store.add_out_link(Path("result-laptop"), entry)
"""

from imagegen.store.derivation import Derivation, FileTree
from imagegen.store.entry import Entry
from imagegen.store.gc import GcResult
from imagegen.store.generations import Generation
from imagegen.store.hashing import canonical_json, tree_digest
from imagegen.store.pkgdiff import PackageDiff, diff_packages
from imagegen.store.store import ENV_VAR, Store, resolve_store_root
from imagegen.store.treediff import TreeDiff, diff_trees
from imagegen.store.verdictdiff import VerdictDiff, diff_verdicts

__all__ = [
    "ENV_VAR",
    "Derivation",
    "Entry",
    "FileTree",
    "GcResult",
    "Generation",
    "PackageDiff",
    "Store",
    "TreeDiff",
    "VerdictDiff",
    "canonical_json",
    "diff_packages",
    "diff_trees",
    "diff_verdicts",
    "resolve_store_root",
    "tree_digest",
]
