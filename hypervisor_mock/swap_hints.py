"""The host's own reclaim hints: the guest pages its CLOCK would swap out next.

When the host is within a watermark of swapping (some zone's free frames at
or under its high watermark, the point below which kswapd would run), the
shell names, per VM, the next cold 4 KiB guest frames ahead of the host
CLOCK hand and sends them to the guest as hints (hint_pfns_le32), beside the
pages RequestBalloonPages asked for. The guest's CLOCK then passes those
pages over: the host is about to take them anyway, so evicting them inside
the guest too would be wasted work.

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
    """The next cold, mapped, 4 KiB guest frames from the CLOCK hand on, as gpfns per vm_id.

    Up to `max_pages` frames are taken over all VMs, in the order the hand
    would meet them (wrapping once round the frame table).
    """
    total = host.total_pages
    if total == 0 or max_pages <= 0:
        return {}
    order = (np.arange(total, dtype=np.int64) + host._hand) % total
    owners = host.owner[order]
    flags = host.flags[order]
    cold = (owners > 0) & ((flags & FLAG_HUGE) == 0) & ((flags & FLAG_REFERENCED) == 0)
    frames = order[cold][:max_pages]
    out: dict[str, npt.NDArray[np.int64]] = {}
    codes = host.owner[frames].astype(np.int64)
    for code in np.unique(codes).tolist():
        vm = host._vms[code - 1]
        out[vm.vm_id] = np.sort(host.gpfn[frames[codes == code]].astype(np.int64))
    return out
