// First import of both programs: the GC tuning must be in place before any module allocates.
import { applyGcTuning } from '../gc-tuning.js';

applyGcTuning();
