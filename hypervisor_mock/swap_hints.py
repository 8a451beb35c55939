"""The host's own reclaim hints: the guest pages its CLOCK would swap out next.

When the host is within a watermark of swapping (some zone's free frames at
or under its high watermark, the point below which kswapd would run), the
shell names, per VM, the 4 KiB guest frames the host CLOCK would take
next (the cold ones ahead of the hand first) and sends them to the guest as
hints (hint_pfns_le32), beside the pages RequestBalloonPages asked for. The
guest's CLOCK then passes those pages over: the host is about to take them
anyway, so evicting them inside the guest too would be wasted work.

Pure reads of the host core: the hand does not move and no referenced bit
is cleared. Known shortcoming: it reads the core's frame table directly
(owner, flags, gpfn, the hand), so a change of those private arrays in
hypervisor_mock/host.py must be mirrored here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hypervisor_mock.host import FLAG_HUGE, FLAG_REFERENCED, Host

#: Most pages hinted per VM at once: a few batches of the guest's own CLOCK.
MAX_HINT_PAGES = 256


def near_swapping(host: Host) -> bool:
    """Whether some zone with managed frames has no more free than its high watermark."""
    return any(
        zone.managed_pages > 0 and zone.buddy.free_pages <= zone.marks.high_pages
        for zone in host._zones
    )


def swap_candidates(
    host: Host, max_pages: int = MAX_HINT_PAGES
) -> dict[str, npt.NDArray[np.int64]]:
    """The host CLOCK's next `max_pages` victims among mapped 4 KiB guest frames, as gpfns
    per vm_id, if no page is touched meanwhile.

    The hand takes the cold frames in the order it meets them and clears the
    referenced bit of the others as it passes; once round, those are cold too
    and go next, in the same order. So the cold frames from the hand on come
    first, then the referenced ones. Without that second turn a host whose
    hand stands still (it is not swapping yet, but within a watermark of it)
    would see every frame its guests touched since as referenced, and hint
    nothing just before it swaps.
    """
    total = host.total_pages
    if total == 0 or max_pages <= 0:
        return {}
    order = (np.arange(total, dtype=np.int64) + host._hand) % total
    owners = host.owner[order]
    flags = host.flags[order]
    mapped = (owners > 0) & ((flags & FLAG_HUGE) == 0)
    cold = mapped & ((flags & FLAG_REFERENCED) == 0)
    frames = np.concatenate((order[cold], order[mapped & ~cold]))[:max_pages]
    out: dict[str, npt.NDArray[np.int64]] = {}
    codes = host.owner[frames].astype(np.int64)
    for code in np.unique(codes).tolist():
        vm = host._vms[code - 1]
        out[vm.vm_id] = np.sort(host.gpfn[frames[codes == code]].astype(np.int64))
    return out
