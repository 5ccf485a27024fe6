"""Transport-free retrieve -> rank -> re-rank funnel shared by the feed API and the publisher."""

from services.pipeline.modelset import ModelSet, ModelSlot
from services.pipeline.pipeline import STAGES, FeedResult, Pipeline
from services.pipeline.state import InMemoryState, ItemInfo, OnlineState, UserState

__all__ = ["STAGES", "FeedResult", "InMemoryState", "ItemInfo", "ModelSet", "ModelSlot", "OnlineState",
           "Pipeline", "UserState"]
