//! Spillway's edge worker.
