"""Query hydrators: facts about the request."""
