"""Speech data: reading audio files, listing corpora, random training windows."""
