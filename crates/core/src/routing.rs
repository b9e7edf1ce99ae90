//! Routing strategies: from a route, a health snapshot and the request, an ordered list of targets.
