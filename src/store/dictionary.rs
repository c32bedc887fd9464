//! The store's zstd dictionary, trained once per new store from the first events' tails
//! ([`Trainer`]), on the encoder thread, so that the batch which completes the samples is
//! already compressed with it: under a flood no batch goes to the store without it.
//!
//! Never: holds more than [`STORE_DICTIONARY_SAMPLES`] samples or
//! [`STORE_DICTIONARY_SAMPLES_BYTES_MAX`] bytes (which bounds one training's time), trains more
//! than [`STORE_DICTIONARY_ATTEMPTS_MAX`] times, does I/O.

use super::codec::{self, CodecError};
use crate::config::limits::{
    STORE_DICTIONARY_ATTEMPTS_MAX, STORE_DICTIONARY_BYTES_MAX, STORE_DICTIONARY_SAMPLE_BYTES_MAX,
    STORE_DICTIONARY_SAMPLES, STORE_DICTIONARY_SAMPLES_BYTES_MAX,
};
use crate::event::Event;

/// What [`Trainer::offer`] came to.
#[derive(Debug)]
pub enum Trained {
    /// Not enough samples yet (or none wanted).
    NotYet,
    /// The dictionary, trained on the samples just completed.
    Dictionary(Vec<u8>),
    /// The last allowed training failed (too little variety): compress without a dictionary.
    GaveUp(CodecError),
}

/// Samples event tails until there are enough, then trains the dictionary.
#[derive(Debug)]
pub struct Trainer {
    samples: Vec<Vec<u8>>,
    sample_bytes: usize,
    attempts: u32,
    done: bool,
}

impl Trainer {
    /// A trainer for a store without a dictionary.
    pub fn new() -> Self {
        Self {
            samples: Vec::new(),
            sample_bytes: 0,
            attempts: 0,
            done: false,
        }
    }

    /// A trainer that wants nothing (the store has its dictionary).
    pub fn finished() -> Self {
        Self {
            done: true,
            ..Self::new()
        }
    }

    /// Whether samples are still wanted.
    pub fn wants_samples(&self) -> bool {
        !self.done
    }

    /// Samples `events` and trains once the samples are complete ([`Self::sample`],
    /// [`Self::train`]).
    pub fn offer(&mut self, events: &[Event]) -> Trained {
        if self.sample(events) {
            self.train()
        } else {
            Trained::NotYet
        }
    }

    /// Samples `events` (each tail cut to [`STORE_DICTIONARY_SAMPLE_BYTES_MAX`]) while samples
    /// are wanted; true once they are complete.
    pub fn sample(&mut self, events: &[Event]) -> bool {
        if self.done {
            return false;
        }
        for event in events {
            if self.complete() {
                break;
            }
            let mut sample = codec::dictionary_sample(event);
            sample.truncate(STORE_DICTIONARY_SAMPLE_BYTES_MAX);
            self.sample_bytes += sample.len();
            self.samples.push(sample);
        }
        self.complete()
    }

    /// Trains on the samples and drops them; a failed training starts over on later samples,
    /// up to [`STORE_DICTIONARY_ATTEMPTS_MAX`] tries.
    pub fn train(&mut self) -> Trained {
        if self.done || self.samples.is_empty() {
            return Trained::NotYet;
        }
        self.attempts += 1;
        let trained = codec::train_dictionary(&self.samples, STORE_DICTIONARY_BYTES_MAX);
        self.samples = Vec::new();
        self.sample_bytes = 0;
        match trained {
            Ok(dictionary) => {
                self.done = true;
                Trained::Dictionary(dictionary)
            }
            Err(error) if self.attempts >= STORE_DICTIONARY_ATTEMPTS_MAX => {
                self.done = true;
                Trained::GaveUp(error)
            }
            Err(_) => Trained::NotYet,
        }
    }

    fn complete(&self) -> bool {
        self.samples.len() >= STORE_DICTIONARY_SAMPLES
            || self.sample_bytes >= STORE_DICTIONARY_SAMPLES_BYTES_MAX
    }
}

impl Default for Trainer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::test_events::event_from;

    /// Events with short messages (~100-byte tails: the count bound binds first).
    fn events(from: u64, count: u64) -> Vec<Event> {
        let source = "10.0.0.1:5060".parse().unwrap();
        (from..from + count)
            .map(|i| {
                let event = event_from(i, source, &(i % 97).to_string());
                let message = format!(
                    "OPTIONS sip:{}@10.1.2.3 SIP/2.0\r\nCall-ID: {i:x}\r\n\r\n",
                    i % 97
                );
                with_message(&event, message.as_bytes())
            })
            .collect()
    }

    /// `event` with its message replaced by `message`.
    fn with_message(event: &Event, message: &[u8]) -> Event {
        let mut parts = event.parts();
        parts.message = message;
        Event::new(&parts)
    }

    #[test]
    fn trains_once_the_samples_are_complete_and_then_wants_none() {
        let mut trainer = Trainer::new();
        let first = events(0, STORE_DICTIONARY_SAMPLES as u64 - 1);
        assert!(matches!(trainer.offer(&first), Trained::NotYet));
        assert_eq!(trainer.samples.len(), STORE_DICTIONARY_SAMPLES - 1);
        // The batch that completes the samples gets the dictionary.
        let Trained::Dictionary(dictionary) = trainer.offer(&events(10_000, 300)) else {
            panic!("no dictionary");
        };
        assert!(!dictionary.is_empty() && dictionary.len() <= STORE_DICTIONARY_BYTES_MAX);
        assert!(!trainer.wants_samples());
        assert!(trainer.samples.is_empty());
        assert!(matches!(trainer.offer(&events(0, 2_000)), Trained::NotYet));
        assert!(trainer.samples.is_empty());
        assert_eq!(trainer.attempts, 1);
    }

    #[test]
    fn samples_are_cut_and_stop_at_their_bytes_bound() {
        let long: Vec<Event> = events(0, STORE_DICTIONARY_SAMPLES as u64)
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let message = format!("{i:08}").repeat(STORE_DICTIONARY_SAMPLE_BYTES_MAX / 4);
                with_message(event, message.as_bytes())
            })
            .collect();
        let bound = STORE_DICTIONARY_SAMPLES_BYTES_MAX / STORE_DICTIONARY_SAMPLE_BYTES_MAX;
        assert!(
            bound < STORE_DICTIONARY_SAMPLES,
            "the bytes bound binds first here"
        );
        let mut trainer = Trainer::new();
        assert!(matches!(trainer.offer(&long[..bound - 1]), Trained::NotYet));
        assert_eq!(trainer.samples.len(), bound - 1);
        assert!(
            trainer
                .samples
                .iter()
                .all(|sample| sample.len() == STORE_DICTIONARY_SAMPLE_BYTES_MAX)
        );
        assert_eq!(trainer.attempts, 0);
        // One more sample reaches the bytes bound: the training runs (whatever it makes of
        // these samples), on no more than the bound.
        let _ = trainer.offer(&long[bound - 1..]);
        assert_eq!(trainer.attempts, 1);
        assert!(trainer.samples.is_empty());
    }

    #[test]
    fn gives_up_after_the_last_failed_attempt() {
        let mut trainer = Trainer::new();
        // Empty tails: nothing to train on (zstd trains even on one-byte ones).
        let tiny: Vec<Event> = events(0, STORE_DICTIONARY_SAMPLES as u64)
            .iter()
            .map(|event| {
                let mut parts = event.parts();
                parts.message = b"";
                parts.method = b"";
                parts.called_number = None;
                parts.user_agent = None;
                Event::new(&parts)
            })
            .collect();
        for attempt in 1..STORE_DICTIONARY_ATTEMPTS_MAX {
            assert!(matches!(trainer.offer(&tiny), Trained::NotYet));
            assert_eq!(trainer.attempts, attempt);
            assert!(trainer.wants_samples());
        }
        assert!(matches!(trainer.offer(&tiny), Trained::GaveUp(_)));
        assert!(!trainer.wants_samples());
        assert!(matches!(trainer.offer(&events(0, 2_000)), Trained::NotYet));
        assert_eq!(trainer.attempts, STORE_DICTIONARY_ATTEMPTS_MAX);
    }
}
