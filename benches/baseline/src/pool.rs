//! Lambda's execution environments, as far as connections go: the decision only, no I/O, so
//! that it is tested on its own.

/// What a request gets from the pool.
#[derive(Debug, PartialEq)]
pub enum Take<E> {
    /// A free environment, with the connection it opened when it was created.
    Warm(E),
    /// None is free and the limit allows another: the caller creates it (and its connection),
    /// then [`Pool::put`]s it back after the request, or [`Pool::discard`]s it when that failed.
    Create,
    /// None is free and the limit is reached: the request is throttled.
    Throttled,
}

/// Environments that exist (busy or free), up to `limit`.
#[derive(Debug)]
pub struct Pool<E> {
    free: Vec<E>,
    alive: usize,
    limit: usize,
}

impl<E> Pool<E> {
    pub fn new(limit: usize) -> Self {
        Pool {
            free: Vec::new(),
            alive: 0,
            limit,
        }
    }

    pub fn take(&mut self) -> Take<E> {
        if let Some(env) = self.free.pop() {
            Take::Warm(env)
        } else if self.alive < self.limit {
            self.alive += 1;
            Take::Create
        } else {
            Take::Throttled
        }
    }

    /// An environment is free again after its request.
    pub fn put(&mut self, env: E) {
        self.free.push(env);
    }

    /// A busy environment is gone (its creation or its request failed).
    pub fn discard(&mut self) {
        self.alive = self.alive.saturating_sub(1);
    }

    /// Environments that exist, busy or free.
    pub fn alive(&self) -> usize {
        self.alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_environment_is_reused_before_another_is_created() {
        let mut p = Pool::new(10);
        assert_eq!(p.take(), Take::Create);
        p.put("env-1");
        assert_eq!(p.take(), Take::Warm("env-1"));
        assert_eq!(p.alive(), 1);
    }

    #[test]
    fn concurrent_requests_create_one_environment_each_up_to_the_limit() {
        let mut p: Pool<u32> = Pool::new(3);
        assert_eq!(p.take(), Take::Create);
        assert_eq!(p.take(), Take::Create);
        assert_eq!(p.take(), Take::Create);
        assert_eq!(p.take(), Take::Throttled);
        assert_eq!(p.alive(), 3);
    }

    #[test]
    fn a_failed_creation_frees_its_place() {
        let mut p: Pool<u32> = Pool::new(1);
        assert_eq!(p.take(), Take::Create);
        assert_eq!(p.take(), Take::Throttled);
        p.discard();
        assert_eq!(p.alive(), 0);
        assert_eq!(p.take(), Take::Create);
    }
}
