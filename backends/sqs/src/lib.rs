//! Switchyard Queue on Amazon SQS (work in progress).
