//! Circuit breakers and health statistics per target (issue 5). Pure state machines.
