//! One request, from its head to events ready to send: the head checked before any body byte
//! is read ([`head`]), the body read against it ([`body`]), and the events validated, given ids
//! and enriched ([`prepare`]) with the edge's own [`context`]; the request's id and random bytes come from [`ids`].
//!
//! Pure but for reading the body through the `BodySource` port. It does not route or answer
//! (`http`, `handler`), rate-limit (`handler`) nor send (`deliver`).

pub mod body;
pub mod context;
pub mod head;
pub mod ids;
pub mod prepare;
