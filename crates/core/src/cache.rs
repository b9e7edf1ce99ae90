//! The exact-match response cache: canonical keys, policy, stored answers and their replay.
