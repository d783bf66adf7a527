//! Reverse-order rollback of a multi-step mutation: each step that succeeded registers how to undo it; if the
//! method returns early, the undo steps run last-first.

type Undo = Box<dyn FnOnce() + Send>;

/// Undo steps, run in reverse order on drop unless [`Cleanup::disarm`] was called.
#[derive(Default)]
pub struct Cleanup {
    steps: Vec<(&'static str, Undo)>,
}

impl Cleanup {
    pub fn new() -> Cleanup {
        Cleanup::default()
    }

    pub fn push(&mut self, what: &'static str, undo: impl FnOnce() + Send + 'static) {
        self.steps.push((what, Box::new(undo)));
    }

    /// The mutation succeeded: keep everything.
    pub fn disarm(mut self) {
        self.steps.clear();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        while let Some((what, undo)) = self.steps.pop() {
            tracing::debug!(step = what, "rolling back");
            undo();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn undoes_in_reverse_order_unless_disarmed() {
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let mut c = Cleanup::new();
            for i in 0..3 {
                let log = Arc::clone(&log);
                c.push("step", move || log.lock().unwrap().push(i));
            }
        }
        assert_eq!(*log.lock().unwrap(), vec![2, 1, 0]);
        let mut c = Cleanup::new();
        let l2 = Arc::clone(&log);
        c.push("step", move || l2.lock().unwrap().push(9));
        c.disarm();
        assert_eq!(log.lock().unwrap().len(), 3);
    }
}
