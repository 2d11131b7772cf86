// fleet
