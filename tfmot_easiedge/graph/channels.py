"""Channel spaces, channel maps and the coupling bookkeeping used while analysing a graph.

A *space* is a set of channels created by one producer (a convolution's filters, a model input...).
A *channel map* says, for every position of a tensor's last axis, which channel of which space it
carries. Layers move maps along (BatchNorm passes it through, Concatenate joins maps, Flatten tiles a
map H·W times) and merge layers couple channels (Add unites position i of every input). Channels that
end up united form one *channel group*: they must be removed together. No TensorFlow here, so these
rules can be unit-tested on NumPy arrays in milliseconds.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ChannelMap:
    """For each position of a tensor's channel axis: the space it comes from and the channel index there.

    Example:
        >>> m = ChannelMap.of_space(3, 4)
        >>> ChannelMap.concat([m, ChannelMap.of_space(5, 2)]).space.tolist()
        [3, 3, 3, 3, 5, 5]
    """

    space: np.ndarray
    index: np.ndarray

    def __post_init__(self):
        if self.space.shape != self.index.shape or self.space.ndim != 1:
            raise ValueError("space and index must be 1-D arrays of the same length")

    def __len__(self) -> int:
        return int(self.space.shape[0])

    @classmethod
    def of_space(cls, space_id: int, size: int) -> ChannelMap:
        return cls(np.full(size, space_id, dtype=np.int64), np.arange(size, dtype=np.int64))

    @classmethod
    def concat(cls, maps: list[ChannelMap]) -> ChannelMap:
        return cls(np.concatenate([m.space for m in maps]), np.concatenate([m.index for m in maps]))

    def tile(self, times: int) -> ChannelMap:
        """The map of a channels-last tensor flattened over ``times`` spatial positions (channel fastest)."""
        return ChannelMap(np.tile(self.space, times), np.tile(self.index, times))

    def repeat(self, times: int) -> ChannelMap:
        """Each channel repeated ``times`` in place (a depthwise multiplier)."""
        return ChannelMap(np.repeat(self.space, times), np.repeat(self.index, times))

    def spaces(self) -> set[int]:
        return set(np.unique(self.space).tolist())


@dataclasses.dataclass
class Space:
    """Channels created by one node: a layer's filters, a model input, or the output of a stop."""

    id: int
    size: int
    node: int | None          # producing node index, None for a model input
    output: int               # which output of that node
    kind: str                 # "filters" | "input" | "stop"
    blocked: list[str] = dataclasses.field(default_factory=list)
    approximate: list[str] = dataclasses.field(default_factory=list)


class ChannelCoupling:
    """Spaces plus a union-find over their channels.

    Example:
        >>> cc = ChannelCoupling()
        >>> a, b = cc.new_space(4, None, 0, "filters"), cc.new_space(4, None, 0, "filters")
        >>> cc.couple(a, b)
        >>> cc.find(cc.key(0, 2)) == cc.find(cc.key(1, 2))
        True
    """

    def __init__(self):
        self.spaces: list[Space] = []
        self._offset: list[int] = []
        self._parent: list[int] = []

    def new_space(self, size: int, node: int | None, output: int, kind: str) -> ChannelMap:
        sid = len(self.spaces)
        self.spaces.append(Space(sid, int(size), node, output, kind))
        self._offset.append(len(self._parent))
        self._parent.extend(range(len(self._parent), len(self._parent) + int(size)))
        return ChannelMap.of_space(sid, int(size))

    def key(self, space: int, index: int) -> int:
        return self._offset[space] + int(index)

    def keys(self, m: ChannelMap) -> np.ndarray:
        return np.asarray(self._offset, dtype=np.int64)[m.space] + m.index

    def find(self, k: int) -> int:
        parent = self._parent
        root = k
        while parent[root] != root:
            root = parent[root]
        while parent[k] != root:
            parent[k], k = root, parent[k]
        return root

    def couple(self, a: ChannelMap, b: ChannelMap) -> None:
        """Unites position i of ``a`` with position i of ``b`` for every i (their lengths must match)."""
        if len(a) != len(b):
            raise ValueError(f"cannot couple {len(a)} channels with {len(b)}")
        for ka, kb in zip(self.keys(a).tolist(), self.keys(b).tolist()):
            ra, rb = self.find(ka), self.find(kb)
            if ra != rb:
                self._parent[max(ra, rb)] = min(ra, rb)

    def block(self, m: ChannelMap, reason: str) -> None:
        """Marks every space that ``m`` touches as not prunable, with ``reason``."""
        for sid in m.spaces():
            if reason not in self.spaces[sid].blocked:
                self.spaces[sid].blocked.append(reason)

    def mark_approximate(self, m: ChannelMap, reason: str) -> None:
        for sid in m.spaces():
            if reason not in self.spaces[sid].approximate:
                self.spaces[sid].approximate.append(reason)

    def components(self) -> list[tuple[list[int], list[int]]]:
        """Groups of coupled spaces: ``[(space ids in creation order, channel roots in order)]``.

        Two spaces are in one group when any of their channels are united. The channel roots are the
        group's channels, numbered in the order of the group's first space (then the others).
        """
        n = len(self.spaces)
        sparent = list(range(n))

        def sfind(s):
            while sparent[s] != s:
                sparent[s] = sparent[sparent[s]]
                s = sparent[s]
            return s

        root_space: dict[int, int] = {}
        for sp in self.spaces:
            for i in range(sp.size):
                r = self.find(self.key(sp.id, i))
                if r in root_space:
                    a, b = sfind(root_space[r]), sfind(sp.id)
                    if a != b:
                        sparent[max(a, b)] = min(a, b)
                else:
                    root_space[r] = sp.id
        members: dict[int, list[int]] = {}
        for sp in self.spaces:
            members.setdefault(sfind(sp.id), []).append(sp.id)
        out = []
        for _, sids in sorted(members.items()):
            roots, seen = [], set()
            for sid in sids:
                for i in range(self.spaces[sid].size):
                    r = self.find(self.key(sid, i))
                    if r not in seen:
                        seen.add(r)
                        roots.append(r)
            out.append((sids, roots))
        return out
