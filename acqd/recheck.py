"""Before a release: is the verified copy still at the destination as it was verified? Blocking.

`quick` (the default; on a tier whose stamps a rewrite can keep, SFTP, it reads the copy back as
`full` does): the copy is there, has the size that was verified, each of its objects has
the size and modification time (a local or mounted file also its inode and change time; S3: the
ETag) it had when it was verified (`Tier.stamp`: a copy written again in between, its size kept, is
not the one verified; a copy no read-back of this journal's stamped, one adopted from a manifest, is
read back once before its first release), and, where the backend keeps
acqd's checksum with the object (S3 metadata), that checksum is the one seen when the copy was
verified. `full`: the layout's own verification runs again (the copy is read back and decoded).
"""

from __future__ import annotations

from dataclasses import dataclass

from acqd.errors import VerifyError
from acqd.journal import CopyRow
from acqd.naming import zarr_own
from acqd.ports import Layout
from acqd.storage import Tier

TREE_LAYOUTS = ("zarr",)  # stored as a folder of objects


@dataclass(frozen=True, slots=True)
class CopyCheck:
    problem: str | None = None  # None: the copy is there as verified
    lost: bool = False  # the copy is gone or changed: ship the file again
    pin: str | None = None  # the tier's checksum to remember for the next checks
    restamp: str | None = None  # its stamp changed and its content verified again: the stamp to remember


def _bare(checksum: str | None) -> str | None:
    """`xxh3-128:ab12..` and `ab12..` (how S3 metadata carries it) compare equal."""
    return None if checksum is None else checksum.rpartition(":")[2].lower()


def expected_tier_checksum(copy: CopyRow) -> str | None:
    """The tier checksum a copy must carry: the one remembered, or for a byte-exact uncompressed copy
    the content checksum itself (the stored bytes are the source bytes)."""
    if copy.stored_checksum:
        return copy.stored_checksum
    if copy.layout == "copy" and copy.codec == "none":
        return copy.checksum
    return None


def check_copy(tier: Tier, layout: Layout, copy: CopyRow, full: bool, just_verified: bool = False) -> CopyCheck:
    """Look at `copy` on `tier` (see the module doc). `just_verified`: the layout verified it a moment
    ago, so a tier checksum seen now is remembered without a second read. Storage errors propagate
    (the caller keeps the file and asks again later)."""
    if layout.name != copy.layout:
        return CopyCheck(f"stored with the {copy.layout} layout, which its placement no longer names (kept)")
    tree = layout.name in TREE_LAYOUTS
    # a Zarr copy: the objects acqd wrote (labels a scientist added to the store are no change to it)
    size = tier.tree_size(tier.path(copy.dest), zarr_own) if tree else tier.size(copy.dest)
    if not size and copy.stored_bytes:
        return CopyCheck(f"the stored copy {tier.url(copy.dest)} is gone", lost=True)
    if size != copy.stored_bytes:
        return CopyCheck(
            f"the stored copy {tier.url(copy.dest)} has {size} bytes, {copy.stored_bytes} were verified", lost=True
        )
    seen = None if tree else _bare(tier.stored_checksum(copy.dest))
    expected = _bare(expected_tier_checksum(copy))
    if (copy.stored_checksum is not None and seen != expected) or (
        seen is not None and expected is not None and seen != expected
    ):  # a remembered checksum that is missing now counts as changed: not the object verified
        return CopyCheck(
            f"the stored copy {tier.url(copy.dest)} carries checksum {seen}, not the verified {expected}", lost=True
        )
    restamp = None
    now = tier.stamp(copy.dest, tree=tree, only=zarr_own if tree else None)
    if (copy.stamp is not None and now != copy.stamp) or (copy.stamp is None and now is not None and not just_verified):
        # written again after it was verified (the size or modification time of an object differs), or
        # only its times moved (a network filesystem, a migration that kept the bytes); or never stamped
        # by a read-back of this journal's (a copy adopted from a manifest: `acqd adopt` reads no copy
        # back, and the NAS may have damaged it since; a copy verified before stamps): read it back
        try:
            layout.verify(tier, copy.dest, copy.as_result())
        except VerifyError as exc:
            if copy.stamp is None:
                return CopyCheck(f"the stored copy {tier.url(copy.dest)} does not verify: {exc}", lost=True)
            return CopyCheck(
                f"the stored copy {tier.url(copy.dest)} was written again after it was verified (its "
                f"size, times or identity as stored differ from the verified copy's, and it no longer verifies: {exc})",
                lost=True,
            )
        if now is None:
            return CopyCheck(f"the stored copy {tier.url(copy.dest)} cannot be looked at as it was verified (kept)")
        restamp = now  # the same content: its new stamp is the one to compare from now on
    if full or not tier.stamps_show_rewrites or (seen is not None and expected is None and not just_verified):
        # asked for; a tier whose stamp a rewrite can keep (SFTP: a copy rewritten within the second of
        # its verification, or its mtime put back, passed the stamp: an adversarial run released 3
        # sources of 4 against damaged copies); or a tier checksum never seen with a verification:
        # read the copy back once
        try:
            layout.verify(tier, copy.dest, copy.as_result())
        except VerifyError as exc:
            return CopyCheck(f"re-verification failed: {exc}", lost=True)
    return CopyCheck(pin=seen if seen is not None and copy.stored_checksum is None else None, restamp=restamp)
