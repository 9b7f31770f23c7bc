"""Populations: many seeds and swept settings of one configuration trained as one compiled, vmapped program
(sharded over every local device), each member judged and registered like a single run."""

from jaxrl.population.members import (Member, MemberEnv, MemberInputs, is_population, member_config, member_inputs,
                                      population_members, sweep_lists)

__all__ = ["Member", "MemberEnv", "MemberInputs", "is_population", "member_config", "member_inputs",
           "population_members", "sweep_lists"]
