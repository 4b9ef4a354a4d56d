// Package campaign runs one bulk-mail campaign: it streams the CSV list
// (codec.ListReader), renders each recipient's message from the compiled
// template (codec.Template) with per-recipient compliance headers and DKIM,
// resolves destinations (engine.Resolver), lets the scheduler decide which
// connections to open and which recipient goes next, drives the engine, and
// records every outcome in the journal (engine/journal) and the results files.
//
// Durability (ARCHITECTURE decision 8): the CSV is the queue. A recipient is
// journalled delivered only after the 250 reply to the final dot; a resumed run
// skips every row whose last journal record is final, so a crash re-sends only
// what was in flight (or not yet group-committed) at the moment of the crash.
package campaign
