"""Parser targets for every host-side input, and the random parser campaign."""
