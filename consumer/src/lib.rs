//! Spillway consumer.
