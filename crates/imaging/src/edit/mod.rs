//! Inputs of the region edit (DESIGN.md part 5): the edit region as a rectangle and a mask
//! (1 inside, 0 outside), Canny edge extraction, and the control image — the condition
//! image scaled to fit the region and pasted into a black canvas the size of the original;
//! and the result pasted back inside the mask with an inward feather.

pub mod canny;
pub mod condition;
pub mod drawn_region;
pub mod mask_composite;
pub mod masked_area;
pub mod region;

pub use canny::{canny, CannyThresholds};
pub use condition::control_canvas;
pub use drawn_region::DrawnRegion;
pub use mask_composite::{feathered_mask, paste_inside_mask};
pub use region::{mask_bounds, region_mask, Rect, Region};
