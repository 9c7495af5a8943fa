"""wellbeing: surveys, satisfaction model, time-limit governor and parental controls."""
