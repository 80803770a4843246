"""Local devnet: a faithful 2023 Scroll coordinator, an L2 trace node and a control API.

`Devnet` (in-process, background thread) and `python -m roller.devnet` / `roller devnet`.
"""

from roller.devnet.devnet import Devnet, DevnetConfig, DevnetPorts

__all__ = ["Devnet", "DevnetConfig", "DevnetPorts"]
