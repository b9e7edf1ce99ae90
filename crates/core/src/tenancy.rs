//! Tenants: tokens, end-user tokens, budgets, rate limits and pricing decisions.
