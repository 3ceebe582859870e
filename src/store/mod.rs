//! What cozyboot keeps in the data dir: its record of what it wrote ([`state`]) and the files
//! of the matchbox tree it did not write ([`hand_made`]).

pub mod hand_made;
pub mod state;
