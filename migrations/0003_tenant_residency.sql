-- Data residency per tenant: a region tag (e.g. 'eu') every target that answers this tenant's
-- requests must carry, on top of the route's own `residency` (docs/ROUTING.md). NULL: none.
ALTER TABLE tenants ADD COLUMN residency TEXT;
