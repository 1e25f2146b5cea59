"""The choices the readers of leaderboards and votes take, named once for the library and the command line.

Light to import on purpose: the command's parser offers them, and `judge-arena --help` must not import pandas.
"""

from __future__ import annotations

from typing import Literal

Order = Literal["intervals", "points"]
ORDERS: tuple[Order, ...] = ("intervals", "points")
"""How agreement with confidence orders a separated pair (`metrics.agreement_with_confidence`); the first is the
default."""

Format = Literal["auto", "run", "arena-hard", "chatbot-arena"]
FORMATS: tuple[Format, ...] = ("auto", "run", "arena-hard", "chatbot-arena")
"""Accepted values of `metrics.load_leaderboard`'s ``fmt``."""

VoteOrders = Literal["combined", "separate"]
VOTE_ORDERS: tuple[VoteOrders, ...] = ("combined", "separate")
"""How a run's two orders of one pair become votes (`agreement`): one combined vote (MT-Bench's rule) or one vote
per order."""
