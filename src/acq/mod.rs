//! Acquisition: one task per bus owns its transport and polls its devices on wall-clock aligned
//! schedules, emitting `SampleBatch`es through one channel. (being built)
